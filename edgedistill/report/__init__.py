"""Rendering results: the report JSON schema and headline ratios, Markdown, HTML with SVG plots, terminal summaries, comparisons of runs."""
