"""`vm-fixtures/build-image`: build a sample bootable container image."""

from __future__ import annotations

import argparse
import os
import sys

from fixture_image.build import build_image, build_images, parse_oci_output
from fixture_image.errors import FixtureError
from fixture_image.recipe import VARIANTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="build-image",
        description="Build a Debian bookworm bootable container image for bootc-py's tests "
                    "(three layers: OS, bootc-py, variant), cached under "
                    "/var/cache/bootc-py-fixtures (BOOTC_PY_FIXTURE_CACHE).")
    parser.add_argument("--variant", required=True, action="append", choices=sorted(VARIANTS),
                        help="v1, v2 or broken; repeat it to build several into one layout "
                             "(then --output oci:DIR, tagged by variant name)")
    parser.add_argument("--output", required=True, metavar="oci:DIR:TAG")
    parser.add_argument("--push", metavar="HOST:PORT/NAME:TAG",
                        help="also copy the image to this registry (skopeo)")
    args = parser.parse_args(argv)
    if len(args.variant) > 1 and args.push:
        parser.error("--push takes one --variant")
    if os.geteuid() != 0:
        print("build-image: error: run as root (mmdebstrap --mode=root, chroot)",
              file=sys.stderr)
        return 1
    try:
        if len(args.variant) == 1:
            results = [build_image(args.variant[0], args.output, push=args.push)]
        else:
            layout, tag = parse_oci_output(args.output, tag_required=False)
            if tag:
                raise FixtureError("several variants go to --output oci:DIR (no tag)")
            results = build_images(args.variant, layout)
    except FixtureError as exc:
        print(f"build-image: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("build-image: interrupted", file=sys.stderr)
        return 130
    for result in results:
        print(result.ref)
    return 0
