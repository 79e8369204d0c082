/* The filters of the All papers page (/papers/; modl/site/papers_index.py writes the table).
 *
 * No dependencies, no network. Each row of table#modl-papers carries its facts as data-* attributes;
 * the controls of form#modl-paper-filters (section, venue, year, code, impl, text) combine with AND:
 *   section: the row's data-sections (its categories and their ancestors) holds the id, so a parent
 *            section matches its subsections' papers;
 *   venue, year, code, impl: equal to the row's attribute;
 *   text:    every whitespace-separated word of the query is a substring of the row's data-text
 *            (both lower-cased, accents removed: "muller" finds "Müller", "lukasz" finds "Łukasz").
 * Rows that fail get the hidden attribute; #modl-papers-count says "N of M papers" and
 * #modl-papers-empty shows when N = 0. The state lives in the query string (?venue=icml&code=yes&text=...,
 * history.replaceState, empty controls left out), and a page opened with one applies it on load: a value
 * that is none of a select's choices (?venue=nosuch) is dropped from the address and named in
 * #modl-papers-ignored. Text is only ever compared with indexOf (no RegExp, no HTML): "c++", "(" or "<b>"
 * are plain characters.
 */
(function () {
  "use strict";

  // "text", not "q": Material's search opens its dialog on any page whose address has ?q= (and drops it on close).
  var FIELDS = ["section", "venue", "year", "code", "impl", "text"];

  // Letters whose stroke or ligature is no combining mark (NFD leaves them whole); papers_index.LETTER_FOLDS
  // is the same table, for the rows' data-text.
  var LETTER_FOLDS = { "ł": "l", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "ß": "ss", "æ": "ae", "œ": "oe", "ı": "i" };
  var FOLDED_LETTERS = /[łøđðþßæœı]/g;

  // Lower case without accents, as papers_index.search_text folds the rows' text: NFD splits "ü" into
  // "u" + U+0308, every combining mark (\p{M}) is removed, then the letters above are spelt out.
  function fold(text) {
    var lower = String(text).toLowerCase();
    if (lower.normalize) lower = lower.normalize("NFD").replace(/\p{M}/gu, "");
    return lower.replace(FOLDED_LETTERS, function (letter) { return LETTER_FOLDS[letter]; });
  }

  function words(query) {
    return fold(query).split(/\s+/).filter(function (word) { return word.length > 0; });
  }

  function matches(row, state, queryWords) {
    if (state.section && (" " + (row.getAttribute("data-sections") || "") + " ").indexOf(" " + state.section + " ") < 0) return false;
    if (state.venue && row.getAttribute("data-venue") !== state.venue) return false;
    if (state.year && row.getAttribute("data-year") !== state.year) return false;
    if (state.code && row.getAttribute("data-code") !== state.code) return false;
    if (state.impl && row.getAttribute("data-impl") !== state.impl) return false;
    var text = row.getAttribute("data-text") || "";
    for (var i = 0; i < queryWords.length; i++) {
      if (text.indexOf(queryWords[i]) < 0) return false;
    }
    return true;
  }

  function readState(form) {
    var state = {};
    FIELDS.forEach(function (name) {
      var control = form.elements[name];
      state[name] = control ? control.value.trim() : "";
    });
    return state;
  }

  // Sets every control from the query string (a control the address leaves out is cleared, so the address
  // alone decides the view, even where the browser restored the form on going back). A value that is not
  // one of a select's options is ignored; the ignored "name=value" pairs are returned, to be reported.
  function loadState(form) {
    var params = new URLSearchParams(window.location.search);
    var ignored = [];
    FIELDS.forEach(function (name) {
      var control = form.elements[name];
      if (!control) return;
      var value = params.has(name) ? params.get(name) : "";
      if (control.tagName === "SELECT") {
        var known = Array.prototype.some.call(control.options, function (option) { return option.value === value; });
        if (!known) ignored.push(name + "=" + value);
        control.value = known ? value : "";
      } else {
        control.value = value;
      }
    });
    return ignored;
  }

  // Says which values of the address were ignored (until the reader changes a filter).
  function reportIgnored(ignored) {
    var note = document.getElementById("modl-papers-ignored");
    if (!note) return;
    if (ignored.length === 0) { note.setAttribute("hidden", ""); note.textContent = ""; return; }
    note.textContent = "Ignored from the address (not one of the choices): " + ignored.join(", ") + ".";
    note.removeAttribute("hidden");
  }

  function saveState(state) {
    if (!window.history || !window.history.replaceState) return;
    var params = new URLSearchParams(window.location.search);  // parameters not ours (Material's ?h=) stay
    FIELDS.forEach(function (name) { if (state[name]) params.set(name, state[name]); else params.delete(name); });
    var query = params.toString();
    var url = window.location.pathname + (query ? "?" + query : "") + window.location.hash;
    window.history.replaceState(window.history.state, "", url);
  }

  function apply(form, table) {
    var state = readState(form);
    var queryWords = words(state.text);
    var rows = table.tBodies[0] ? table.tBodies[0].rows : [];
    var shown = 0;
    Array.prototype.forEach.call(rows, function (row) {
      var keep = matches(row, state, queryWords);
      if (keep) { row.removeAttribute("hidden"); shown += 1; } else { row.setAttribute("hidden", ""); }
    });
    var count = document.getElementById("modl-papers-count");
    if (count) count.textContent = shown + " of " + rows.length + " papers";
    var empty = document.getElementById("modl-papers-empty");
    if (empty) { if (shown === 0) empty.removeAttribute("hidden"); else empty.setAttribute("hidden", ""); }
    return state;
  }

  function setup() {
    var form = document.getElementById("modl-paper-filters");
    var table = document.getElementById("modl-papers");
    if (!form || !table || form.getAttribute("data-modl-ready") === "1") return;
    form.setAttribute("data-modl-ready", "1");
    var ignored = loadState(form);
    form.removeAttribute("hidden");
    // The address is rewritten to the state applied: ignored values leave it, so sharing it shares the view.
    saveState(apply(form, table));
    reportIgnored(ignored);
    function update() { reportIgnored([]); saveState(apply(form, table)); }
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    form.addEventListener("submit", function (event) { event.preventDefault(); update(); });
    // "Clear filters" is a reset button: the controls change after the reset event, so apply then.
    form.addEventListener("reset", function () { window.setTimeout(update, 0); });
  }

  // Material's instant navigation (if enabled) swaps pages without a load event: follow document$.
  if (typeof window.document$ !== "undefined" && window.document$.subscribe) {
    window.document$.subscribe(setup);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
})();
