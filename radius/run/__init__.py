"""The run layer: the run specification, the result files, the per-input step, data and progress.

* :mod:`radius.run.spec` -- :class:`RunSpec`, its checks, metadata and the one seed rule;
* :mod:`radius.run.files` -- the results TSV and the counts log, locking, validation on read;
* :mod:`radius.run.step` -- one input's samples and certificate; the overlap of bounds with sampling;
* :mod:`radius.run.data` -- data sets from arrays, iterables and files, and their identity;
* :mod:`radius.run.progress` -- the progress bar (tqdm).

The engines (:mod:`radius.engines`) run a :class:`RunSpec` over a data set; nothing here parses flags.
"""
