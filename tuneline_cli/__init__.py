"""The ``tuneline`` command line. It sits above ``flows``: the core library never imports it."""
