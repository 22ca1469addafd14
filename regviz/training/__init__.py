"""Training: settings and sparse rows in, one EpochRecord per epoch out (TensorFlow and Keras).

Import its modules by name (`from regviz.training.loop import train`): this package itself imports
nothing, so that `regviz.training.version` can be read by the page server, which never loads TensorFlow.
"""
