"""Build the sample bootable container images bootc-py's tests boot.

Three layers, each cached under the fixture cache by a key of what it is made from:

1. the OS (mmdebstrap rootfs + dracut initramfs): keyed by vm-fixtures/recipe/ and the code
   that builds it, never by bootc-py's source;
2. bootc-py itself and the guest check unit: keyed by src/bootc_py and vm-fixtures/guest/;
3. the variant (marker file, health check): tiny, rebuilt every time, deterministic.

Tar streams and gzip are deterministic, so v1 and v2 share their two lower blobs exactly.
"""

from __future__ import annotations

from fixture_image.build import BuildResult, build_image, build_images
from fixture_image.errors import FixtureError
from fixture_image.recipe import VARIANTS, Variant

__all__ = ["VARIANTS", "BuildResult", "FixtureError", "Variant", "build_image", "build_images"]
