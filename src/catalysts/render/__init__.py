"""Terminal output. The only package that imports Rich (ruff TID251 enforces it).

Feed text is data, never markup: every string that came from a feed is wrapped with
`safe.text()` (a `rich.text.Text`, never parsed as markup, controls stripped) before it
reaches a Rich renderable.
"""
