"""The learned codec at run time (encode on the camera, decode at the hub) and its classical fallback."""
