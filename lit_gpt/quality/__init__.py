"""Data quality ("quality beats quantity"): what a record is scored on and the scored files (`scored_records`), a
judge model (`judge`, AlpaGasus), Instruction-Following Difficulty (`ifd`), rule-based flags (`heuristics`), resumable
scoring and filtering by score (`scoring`), and generated data: Self-Instruct and backtranslation (`synthetic`)."""
