/* Sortable tables of the modl catalog site (no dependencies, no network).
 *
 * Every table of two or more rows inside an element with class "modl-sortable" gets clickable column headers: a click
 * sorts the rows by that column, ascending; a second click on the same header sorts descending.
 * Cells are compared as numbers when both parse as numbers (a trailing "± spread" is ignored, so
 * "0.12 ± 0.01" sorts by 0.12; exponents such as 1.2e-05 are understood), otherwise as text
 * (locale-aware, case-insensitive, with numeric collation). Empty cells and "–" (no value) go last in
 * either direction. Ties keep their previous order (stable sort).
 * The current order is exposed as aria-sort on the header, for assistive technology and tests; papers.css
 * draws it as an arrow after the header's text (faint ↕ unsorted, ▲ ascending, ▼ descending). The hint
 * "Click a column header to sort the table." is written above each table at build time and shown once the
 * table is sortable (class modl-sort-ready; without JavaScript the headers do nothing, so neither does the hint).
 */
(function () {
  "use strict";

  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    var explicit = cell.getAttribute("data-sort");
    return (explicit !== null ? explicit : cell.textContent).trim();
  }

  // A number ("12", "3.5%", "1.2e-05"), optionally followed by a spread ("0.12 ± 0.01"): sorted by the first.
  var NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?%?(\s*±\s*[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?%?)?$/i;
  var EMPTY = /^(|–|-|—|n\/a)$/i;  // a value that does not apply: last in either direction

  function compare(a, b) {
    if (NUMBER.test(a) && NUMBER.test(b)) return parseFloat(a) - parseFloat(b);
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }

  function sortBy(table, index, direction) {
    var body = table.tBodies[0];
    if (!body) return;
    var rows = Array.prototype.slice.call(body.rows).map(function (row, position) {
      return { row: row, key: cellKey(row, index), position: position };
    });
    rows.sort(function (p, q) {
      var emptyP = EMPTY.test(p.key), emptyQ = EMPTY.test(q.key);
      if (emptyP !== emptyQ) return emptyP ? 1 : -1;
      var order = compare(p.key, q.key) * direction;
      return order !== 0 ? order : p.position - q.position;
    });
    rows.forEach(function (item) { body.appendChild(item.row); });
  }

  function enhance(table) {
    if (table.getAttribute("data-modl-sortable") === "1" || !table.tHead) return;
    // A table of one row (a method's row of a results table) has no order to choose: no arrows on it.
    if (!table.tBodies[0] || table.tBodies[0].rows.length < 2) return;
    table.setAttribute("data-modl-sortable", "1");
    // The hint written above the table (results.sort_hint) shows only now that its headers sort: papers.css
    // hides a hint without this class, so no JavaScript (or a one-row table) means no hint to follow.
    var wrapper = table.closest ? table.closest(".modl-sortable") : null;
    var hint = wrapper ? wrapper.previousElementSibling : null;
    if (hint && hint.classList.contains("modl-sort-hint")) hint.classList.add("modl-sort-ready");
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (header, index) {
      header.classList.add("modl-sort-header");
      header.setAttribute("tabindex", "0");
      header.setAttribute("role", "columnheader");
      header.setAttribute("aria-sort", "none");
      header.title = "Sort by this column";
      function activate() {
        var ascending = header.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (other) { other.setAttribute("aria-sort", "none"); });
        header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        sortBy(table, index, ascending ? 1 : -1);
      }
      header.addEventListener("click", activate);
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); activate(); }
      });
    });
  }

  function enhanceAll() {
    var tables = document.querySelectorAll(".modl-sortable table");
    Array.prototype.forEach.call(tables, enhance);
  }

  // Material's instant navigation (if enabled) swaps pages without a load event: follow document$.
  if (typeof window.document$ !== "undefined" && window.document$.subscribe) {
    window.document$.subscribe(enhanceAll);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", enhanceAll);
  } else {
    enhanceAll();
  }
})();
