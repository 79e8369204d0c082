"""mkdocs hook of the catalog site (named by ``hooks:`` in mkdocs.yml).

* ``on_config``: loads the catalog (``$MODL_CATALOG_ROOT`` or this checkout), sets ``site_url`` and
  ``repo_url`` from ``catalog/project.yaml``, builds the navigation from the taxonomy and sets the tags
  allow-list (venue short names and years), so an unknown tag fails the build.
* ``on_files``: adds every generated page (sections, papers, indexes, statistics, downloads,
  reference implementations, one page per registered method, the Results section read from
  benchmarks/results/), the downloads (catalog.bib, catalog.json, paper.schema.json) and the reproduced
  figures' images as virtual files; nothing generated is written into ``site/``.
* ``on_page_markdown``: fills the data markers of the hand-written home page.
* ``on_serve``: ``mkdocs serve`` also watches catalog/, reference_impls/ and benchmarks/results/.

Problems (an invalid catalog, a missing renderer) stop the build with one clear message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

from modl.site import escape as E
from modl.site.data import SiteError, catalog_root, load
from modl.site.math import render_math
from modl.site.pages import SiteModel, build_site_model, section_uri
from modl.site.papers_index import PAPERS_INDEX_URI
from modl.site.search import mark_search_exclusions
from modl.site.tables import label_table_cells

DESIGN_PAGE = "implementations/design.md"
MARKERS = {
    "<!-- modl:counts -->": "home_counts",
    "<!-- modl:taxonomy -->": "home_taxonomy",
    "<!-- modl:whats-new -->": "home_whats_new",
    "<!-- modl:cite -->": "home_cite",
}

_state: dict[str, Any] = {}


def _model() -> SiteModel:
    model = _state.get("model")
    if model is None:  # pragma: no cover - on_config always runs first
        raise PluginError("modl site hook: on_config did not run")
    return model


def _nav(model: SiteModel, has_design: bool) -> list[Any]:
    def section(category) -> Any:
        title = E.html(category.title)
        if not category.children:
            return {title: section_uri(category.id)}
        return {title: [{"Overview": section_uri(category.id)}] + [section(c) for c in category.children]}

    implementations: list[Any] = [{"Overview": "implementations/index.md"}]
    if has_design:
        implementations.append({"Design of the reference implementations": DESIGN_PAGE})
    return [
        {"Home": "index.md"},
        {"Catalog": [section(c) for c in model.catalog.categories]},
        {"Browse": [{"All papers": PAPERS_INDEX_URI}, {"By venue": "venues.md"}, {"By year": "years.md"}]},
        {"Reference implementations": implementations},
        {"Results": model.results_nav()},
        {"Statistics": "statistics.md"},
        {"Downloads": "downloads.md"},
    ]


@event_priority(100)  # before the tags plugin reads its allow-list
def on_config(config, **kwargs):
    _state.clear()
    try:
        catalog = load(catalog_root())
        has_design = (Path(config["docs_dir"]) / DESIGN_PAGE).is_file()
        model = build_site_model(catalog, has_design=has_design)
        pages = model.pages()
        downloads = model.downloads()
        images = model.images()
    except SiteError as error:
        raise PluginError(f"modl site: {error}") from None
    _state.update(model=model, pages=pages, downloads=downloads, images=images)

    project = catalog.project
    config["site_url"] = project.site_url
    config["repo_url"] = project.repo_url
    config["repo_name"] = project.repo_url.rstrip("/").split("github.com/")[-1]
    config["site_name"] = project.name
    config["site_description"] = project.tagline
    config["nav"] = _nav(model, has_design)

    tags = config["plugins"].get("material/tags") or config["plugins"].get("tags")
    if tags is None:
        raise PluginError("modl site: mkdocs.yml must enable the material 'tags' plugin")
    from material.plugins.tags.structure.tag import Tag

    allowed = {Tag(t) for t in model.allowed_tags()}
    tags.config.tags_allowed = allowed
    mappings = getattr(tags, "mappings", None)  # already configured when the tags plugin ran first
    if mappings is not None:
        mappings.format.allowed = allowed
    return config


def on_files(files: Files, config, **kwargs):
    for uri in [*_state["pages"], *_state["downloads"], *_state["images"]]:
        if files.get_file_from_path(uri) is not None:
            raise PluginError(f"modl site: {uri} is generated; remove it from {config['docs_dir']}")
    for uri, text in _state["pages"].items():
        files.append(File.generated(config, uri, content=text))
    for uri, text in _state["downloads"].items():
        files.append(File.generated(config, uri, content=text.encode("utf-8")))
    for uri, data in _state["images"].items():
        files.append(File.generated(config, uri, content=data))
    return files


def on_page_markdown(markdown: str, page, config, files, **kwargs):
    if page.file.src_uri != "index.md":
        return markdown
    model = _model()
    for marker, method in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, getattr(model, method)())
    return markdown


def on_page_content(html: str, page, config, files, **kwargs):
    # Runs before the search plugin reads page.content (on_page_context): exclusions reach the index.
    html = render_math(html)
    html = label_table_cells(html)
    return mark_search_exclusions(html, page.file.src_uri)


def on_serve(server, config, builder, **kwargs):
    """``mkdocs serve`` rebuilds when records, vocabularies, the registry or method sources change."""
    root = catalog_root()
    for folder in (root / "catalog", root / "reference_impls", root / "benchmarks" / "results"):
        if folder.is_dir():
            server.watch(str(folder))
    return server
