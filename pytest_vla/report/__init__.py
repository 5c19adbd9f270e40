"""report.json: its row schema, writing it, reading it back and summarising it.

Nothing here imports pytest, a simulator or the controller: merge, compare and the HTML report
work from report.json files alone.
"""
