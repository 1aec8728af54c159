"""Instruction data: source files -> records (`records`) -> normalized examples (`normalize`) -> token ids and labels
(`tokenize`) -> the prepared-dataset format (`prepared`), run by `prepare`; plus what the dataset tools need: the
order of examples in an epoch (`order`), mixing datasets (`mixing`), text similarity for near-duplicates
(`similarity`) and checks of prepared examples (`defects`)."""
