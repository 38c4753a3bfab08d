"""Code vendored from other projects, each in its own folder with its license and provenance."""
