"""The names bootc-py gives things in an ostree repository: its refs and commit metadata keys.

Apart from the importer that writes them, so that reading a sysroot (`status`, the boot-time
units) does not load the pull machinery.
"""

from __future__ import annotations

LAYER_REF_PREFIX = "bootc-py/layer"
IMAGE_REF_PREFIX = "bootc-py/image"

# Commit metadata keys. The ostree.* ones are those ostree-ext/bootc write, so their tools
# can read what we record; the bootc-py.* ones are ours.
META_MANIFEST_DIGEST = "ostree.manifest-digest"
META_MANIFEST = "ostree.manifest"
META_CONFIG = "ostree.container.image-config"
META_IMGREF = "bootc-py.imgref"
META_VERSION = "version"
META_DIFF_ID = "bootc-py.diff-id"
META_BLOB = "bootc-py.blob-digest"
VERSION_LABEL = "org.opencontainers.image.version"
