"""Image source: references, registry client, blob cache, flatten.

    ref.py             parse_imgref() -> ImageRef (registry:, docker://, oci:, oci-archive:,
                       containers-storage:, docker-archive:)
    source.py          PullOptions, pull() / resolve() / cached_image() -> Image (+ Layer)
    flatten.py         apply_layer() (WhiteoutMode.APPLY / RECORD, skip_special), unpack()
    registry.py        the OCI distribution API client (auth, TLS policy, retries, resume)
    cache.py           the content-addressed blob cache (file locks, verify, list, prune)
    auth.py            credentials from containers auth files; WWW-Authenticate parsing
    registries_conf.py insecure / blocked / relocated registries from registries.conf
    oci_layout.py      reading OCI layouts and oci-archive tars
    tarstream.py       bounded-memory decompression and the tar parser
    digest.py, mediatypes.py
"""
