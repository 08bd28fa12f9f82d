"""Import images into an ostree repository and commit them in ostree layout."""
