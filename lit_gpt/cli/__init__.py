"""The scripts' command line: the argument parser every script uses (`parser`: --print_config, --help and errors
with secrets masked, a bad --config named by file) and what counts as a secret and how it is hidden (`secrets`)."""
