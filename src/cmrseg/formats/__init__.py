"""Model formats, below the run folder and inference: the export zip (:mod:`~cmrseg.formats.bundle`), the
ONNX graph and its metadata (:mod:`~cmrseg.formats.onnx`), the model card (:mod:`~cmrseg.formats.card`), the
cache they unpack into (:mod:`~cmrseg.formats.cache`) and their shared name and version
(:mod:`~cmrseg.formats.version`)."""
