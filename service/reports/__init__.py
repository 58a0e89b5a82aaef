"""A job's one-page audit report, as HTML and as PDF, from the same content
(``content.ReportContent``): the model's fingerprints, the recipe, the method and settings,
where and how long it ran, the finding in plain words, the best pairs, the loss curve, the lr
search and the ranking where present, and provenance. Charts are drawn by matplotlib
(``charts``), the HTML by a Jinja2 template (``html``) and the PDF by fpdf2 (``pdf``); all three
are pure-Python wheels, so a report needs no system library. The API serves both files."""
