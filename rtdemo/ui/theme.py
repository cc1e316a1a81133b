"""Look and feel, and the launch settings, in one place: Gradio 6 takes theme, css, js and head
in `launch()`.

`app.py` and the tests both launch with `launch_kwargs()`, so what the tests see is what users see.
It sets Gradio's `max_file_size` from `RTDEMO_MAX_UPLOAD_MB` (`rtdemo.hosting.quotas`): Gradio
stops a larger upload while it arrives (HTTP 413) and deletes what it had written, and the
browser's upload widget refuses such a file before sending it. `delete_cache()` is the app's
`gr.Blocks(delete_cache=...)`: Gradio's temporary files (uploads, downloads) are deleted once
`RTDEMO_UPLOAD_TTL_S` old, so an upload nobody used does not stay.

Keyboard shortcuts (the Review tab): one listener on the page clicks the button whose element id
`SHORTCUTS` maps the key to. It does nothing while the user types (text boxes, dropdowns), with a
modifier key held, inside tables (arrows move between cells there), or when the button is not on
screen (another tab is open), so a key never acts on a sample the reviewer cannot see.
"""

from __future__ import annotations

import json

from rtdemo.hosting.quotas import Quotas

CSS = """
.rt-note { font-size: 0.9em; opacity: 0.85; }
"""

# Element ids of the Review tab's buttons (review_tab.py sets them from here).
REVIEW_ACCEPT = "rt-review-accept"
REVIEW_REJECT = "rt-review-reject"
REVIEW_NEXT = "rt-review-next"
REVIEW_PREVIOUS = "rt-review-previous"

SHORTCUTS: dict[str, str] = {
    "a": REVIEW_ACCEPT,
    "r": REVIEW_REJECT,
    "j": REVIEW_NEXT,
    "ArrowRight": REVIEW_NEXT,
    "k": REVIEW_PREVIOUS,
    "ArrowLeft": REVIEW_PREVIOUS,
}

_SHORTCUT_SCRIPT = """
(() => {
  const keys = %s;
  const typing = (el) =>
    !!el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.repeat) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const id = keys[event.key];
    if (!id) return;
    const target = event.composedPath ? event.composedPath()[0] : event.target;
    if (typing(target) || typing(document.activeElement)) return;
    if (target.closest && target.closest("table, [role=grid], [role=tablist], [role=listbox]")) {
      return;
    }
    const button = document.getElementById(id);
    if (!button || button.disabled || !button.getClientRects().length) return;
    event.preventDefault();
    button.click();
  });
})();
"""

HEAD = f"<script>{_SHORTCUT_SCRIPT % json.dumps(SHORTCUTS)}</script>"


def launch_kwargs() -> dict:
    """Keyword arguments for `demo.launch(...)` shared by `app.py` and the tests."""
    import gradio as gr

    return {
        "theme": gr.themes.Soft(),
        "css": CSS,
        "head": HEAD,
        "show_error": True,
        "max_file_size": Quotas.from_env().max_upload_bytes,
    }


def delete_cache() -> tuple[int, int] | None:
    """`gr.Blocks(delete_cache=...)`: (how often, how old) in seconds, from
    `RTDEMO_UPLOAD_TTL_S`; None (for 0): Gradio never deletes its temporary files."""
    ttl = Quotas.from_env().upload_ttl_s
    return (max(1, ttl // 10), ttl) if ttl else None
