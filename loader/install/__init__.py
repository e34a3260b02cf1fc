"""Installing, updating and deleting a plugin through its folder (REST's plugin routes use it).

``installer.py`` is the transaction (stage, validate, rename in, reconcile,
roll back on failure); ``errors.py`` says what went wrong in domain terms;
``archive.py`` fetches and unpacks a zip without trusting it; ``shipped.py``
decides which of a plugin's shipped configuration files go to ``etc/``.
"""
