// Progressive enhancement for the capture view: zoom (wheel, buttons, + / - / 0) and pan (drag) of the
// image, j/k or arrow keys for the next/previous capture. Without JavaScript the page still shows the
// image, its "full size" link and the decision form.
(function () {
  "use strict";
  function typing(target) {
    return target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName);
  }
  document.addEventListener("keydown", function (event) {
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    var link = null;
    if (event.key === "j" || event.key === "ArrowRight") link = document.getElementById("next");
    if (event.key === "k" || event.key === "ArrowLeft") link = document.getElementById("prev");
    if (link) { window.location.href = link.href; event.preventDefault(); }
  });

  var viewer = document.getElementById("viewer");
  var image = document.getElementById("image");
  if (!viewer || !image) return;
  var scale = 1, x = 0, y = 0, hires = false;
  var label = document.getElementById("zoom-level");

  function fitted() {  // the image's size at zoom 1 (CSS fits it in the viewer)
    return { w: image.clientWidth || 1, h: image.clientHeight || 1 };
  }
  function clamp() {  // keep some of the image in view
    var size = fitted(), vw = viewer.clientWidth, vh = viewer.clientHeight;
    var w = size.w * scale, h = size.h * scale;
    x = Math.min(Math.max(x, Math.min(0, vw - w)), Math.max(0, vw - w));
    y = Math.min(Math.max(y, Math.min(0, vh - h)), Math.max(0, vh - h));
  }
  function draw() {
    clamp();
    image.style.transform = "translate(" + x + "px," + y + "px) scale(" + scale + ")";
    viewer.setAttribute("data-zoom", scale.toFixed(2));
    if (label) label.textContent = Math.round(scale * 100) + "%";
    if (scale > 1.5 && !hires && image.dataset.hires) {  // the larger rendition only when zoomed in
      hires = true;
      image.src = image.dataset.hires;
    }
  }
  function zoom(factor, cx, cy) {
    var next = Math.min(16, Math.max(1, scale * factor));
    if (cx === undefined) { cx = viewer.clientWidth / 2; cy = viewer.clientHeight / 2; }
    x = cx - (cx - x) * (next / scale);
    y = cy - (cy - y) * (next / scale);
    scale = next;
    draw();
  }
  function fit() { scale = 1; x = 0; y = 0; draw(); }

  viewer.addEventListener("wheel", function (event) {
    event.preventDefault();
    var box = viewer.getBoundingClientRect();
    zoom(event.deltaY < 0 ? 1.25 : 0.8, event.clientX - box.left, event.clientY - box.top);
  }, { passive: false });
  var drag = null;
  viewer.addEventListener("pointerdown", function (event) {
    drag = { px: event.clientX, py: event.clientY, x: x, y: y };
    viewer.classList.add("dragging");
    viewer.setPointerCapture(event.pointerId);
  });
  viewer.addEventListener("pointermove", function (event) {
    if (!drag) return;
    x = drag.x + event.clientX - drag.px;
    y = drag.y + event.clientY - drag.py;
    draw();
  });
  function release() { drag = null; viewer.classList.remove("dragging"); }
  viewer.addEventListener("pointerup", release);
  viewer.addEventListener("pointercancel", release);
  document.getElementById("zoom-in").addEventListener("click", function () { zoom(1.5); });
  document.getElementById("zoom-out").addEventListener("click", function () { zoom(1 / 1.5); });
  document.getElementById("zoom-fit").addEventListener("click", fit);
  document.addEventListener("keydown", function (event) {
    if (typing(event.target) || event.ctrlKey || event.metaKey) return;
    if (event.key === "+" || event.key === "=") zoom(1.5);
    else if (event.key === "-") zoom(1 / 1.5);
    else if (event.key === "0") fit();
  });
  draw();
})();
