"""The ``cmrseg`` verbs: one module each with ``add_parser(subparsers)`` and ``run(args)``.

Only :mod:`cmrseg.cli` imports this package; the library never imports argparse or the commands.
"""
