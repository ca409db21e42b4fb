"""Networks as data: the description (``description``), its file format (``file_format``), the paper's network and
its variants as descriptions (``alexnet``). See docs/network_format.md."""
