"""The export's path must not decide pytest's rootdir, ini file and conftests.

pytest picks its rootdir and ini file before any plugin is loaded, from every argument that is an
existing path: the value of ``--vla-export /data/exports/x`` counts as one, since ``--vla-export``
is not known yet. Run from a project directory, the rootdir becomes a common ancestor (``/``), and
the project's ``pytest.ini`` (the ``vla_*`` keys, markers, addopts) and conftest hooks are
silently not used. Once pytest-vla's options are known this redoes that choice from the real test
paths, before the initial conftests load, exactly as pytest would have made it.
"""

from __future__ import annotations

import copy

import pytest
from _pytest.config.findpaths import determine_setup


def choose_rootdir_without_option_values(config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """Re-determine rootdir and ini file from ``args`` now that option values are recognised as such."""
    namespace = parser.parse_known_args(args, namespace=copy.copy(config.option))
    rootpath, inipath, inicfg, ignored = determine_setup(
        inifile=namespace.inifilename,
        override_ini=namespace.override_ini,
        args=namespace.file_or_dir,
        rootdir_cmd_arg=namespace.rootdir or None,
        invocation_dir=config.invocation_params.dir,
    )
    if (rootpath, inipath) == (config.rootpath, config.inipath):
        return
    # pytest keeps these on the Config; what pytest's own parse() sets from them is set again.
    config._rootpath, config._inipath, config._inicfg = rootpath, inipath, inicfg
    config._ignored_config_files = ignored
    config._inicache.clear()
    parser.extra_info["rootdir"] = str(rootpath)
    parser.extra_info["inifile"] = str(inipath)
    addopts = config.getini("addopts")
    args[:] = [*addopts, *args]
    # pytest applied the first ini's ``-p`` options before this hook; this ini's must take effect too.
    config.pluginmanager.consider_preparse(addopts, exclude_only=False)
    config.known_args_namespace = parser.parse_known_args(args, namespace=copy.copy(config.option))
    if config.known_args_namespace.confcutdir is None:
        config.known_args_namespace.confcutdir = str(inipath.parent if inipath is not None else rootpath)
