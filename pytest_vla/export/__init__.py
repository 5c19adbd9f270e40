"""The export format: ``vla_export.json`` bindings, reflex export directories, normalization statistics, files.

Pure data: nothing here loads a model, imports pytest or starts a simulator.
"""

MANIFEST_NAME = "vla_export.json"
FORMAT = "vla-export/1"
