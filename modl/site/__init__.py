"""The catalog site: pages generated at build time from the records by an mkdocs hook.

``mkdocs.yml`` names :mod:`modl.site.hooks`; the hook loads the catalog (from the repository, or from
the folder named by the environment variable ``MODL_CATALOG_ROOT``), writes every page as a virtual
file (nothing generated is committed) and adds the downloads (BibTeX, JSON, JSON Schema) to the site.
Like the rest of :mod:`modl`, this package never imports torch: the registry of reference
implementations is read from ``reference_impls/registry.py`` on its own, and source files as text.
"""
