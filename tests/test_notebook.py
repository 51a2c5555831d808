"""The blocking client in a real IPython kernel, where the cell's thread has a running event
loop: a notebook executed with nbclient, its outputs checked."""

from __future__ import annotations

import sys
import warnings

import nbformat
from nbclient import NotebookClient

from r9s_async.testing import FakeR9sAPI

CELLS = [
    """
import sys
print(sys.executable)
from r9s_async.testing import TEST_API_KEY, FakeR9sAPI
api = FakeR9sAPI()
serving = api.serve_in_thread()
url = serving.__enter__()
""",
    """
import asyncio, r9s_async
asyncio.get_running_loop()  # the kernel's loop runs in this thread
client = r9s_async.Client(TEST_API_KEY, base_url=url)
report = client.usage(1_714_521_600, 1_714_521_600 + 3 * 86_400)
expected = sum(r["tokens"] for r in api.records_in(1_714_521_600, 1_714_521_600 + 3 * 86_400))
assert expected == report.total_tokens, (expected, report.total_tokens)
print(report.total_tokens, len(report.records))
""",
    """
print(client.balance().currency_code)
""",
    """
client.close()
serving.__exit__(None, None, None)
print("closed")
""",
]


def test_the_sync_client_works_in_an_ipython_kernel() -> None:
    notebook = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    notebook.cells = [
        nbformat.v4.new_code_cell(source.strip())  # type: ignore[no-untyped-call]
        for source in CELLS
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    runner = NotebookClient(notebook, timeout=60, kernel_name="python3")
    with warnings.catch_warnings():
        # Jupyter's own internals, not ours: jupyter_client and jupyter_core warn about
        # their platformdirs migration and zmq's event loop policy.
        runner.execute()

    outputs = [
        "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        for cell in notebook.cells
    ]
    errors = [o for cell in notebook.cells for o in cell.outputs if o.output_type == "error"]
    assert [] == errors
    expected = FakeR9sAPI().records_in(1_714_521_600, 1_714_521_600 + 3 * 86_400)
    assert [
        f"{sys.executable}\n",  # the kernel runs this interpreter, with this r9s_async
        f"{sum(r['tokens'] for r in expected)} {len(expected)}\n",
        "USD\n",
        "closed\n",
    ] == outputs
