"""The dashboard: server-rendered pages (Jinja2 templates in ``templates/``) with a little
JavaScript of our own (``static/``) that calls the same ``/v1`` endpoints as every other client,
signed in by the session cookie. Nothing here reads or writes data that ``/v1`` does not
already offer to the same team; the pages only lay it out."""
