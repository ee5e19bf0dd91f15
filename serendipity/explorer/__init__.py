"""The serendipity explorer's library side: what the page shows, read from the work directory.

``catalog``: items, the cluster tree and the batch-inference answers; ``media``: thumbnails and the frames
a prompt samples, by item id, within the validation limits; ``slates``: the exploitation baseline next to
the served slate. The HTTP routes live in ``serving/explorer.py``; the headless-Chromium driver of the browser
tests and the README screenshot is development tooling (``devtools/browser.py``), not installed.
"""
