"""Data quality ("quality beats quantity"): the rows that are scored and their files (`rows`), a judge model
(`judge`, AlpaGasus), Instruction-Following Difficulty (`ifd`), rule-based flags (`heuristics`), resumable scoring
and filtering by score (`scoring`), and generated data: Self-Instruct and backtranslation (`synthetic`)."""
