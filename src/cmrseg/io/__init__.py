"""Writing files safely: atomic writers (:mod:`~cmrseg.io.atomic`), output-path checks, markers and the list of
files cmrseg wrote (:mod:`~cmrseg.io.outputs`), one writer per folder (:mod:`~cmrseg.io.locks`)."""
