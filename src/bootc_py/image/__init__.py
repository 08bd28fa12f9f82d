"""Image source: references, registry client, blob cache, flatten."""
