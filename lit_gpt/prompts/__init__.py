"""Prompt styles: the segments every style is built from (`base`), the simple instruction styles and the
registry that picks a style per model (`styles`), and the chat formats of the model families (`chat_formats`)."""
