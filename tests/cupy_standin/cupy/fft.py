"""``cupy.fft`` of the stand-in: present (array-api-compat imports it), empty."""
