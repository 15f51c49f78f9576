"""Stage 4, the report: commentary, formulas, HTML and PDF. Never imports keras."""
