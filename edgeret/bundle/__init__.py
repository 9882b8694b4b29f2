"""A device bundle: its manifest and golden pairs, and the verify and bench commands run on the device."""
