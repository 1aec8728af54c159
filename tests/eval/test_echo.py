"""lit_gpt/eval/echo.py: an answer that repeats its prompt is an echo; an answer that uses the prompt's words is not."""

from lit_gpt.eval.echo import echo_flags, is_echo, without_echoes

PROMPT = "Write a short poem about the sea. Include the keyword 'salt' and do not use any commas."


def test_echoes():
    assert is_echo(PROMPT, PROMPT)
    assert is_echo(PROMPT, "  write a SHORT poem about the sea.\nInclude the keyword 'salt' and do not use any "
                           "commas. Waves roll in")  # the prompt as a prefix, whitespace and case aside
    assert is_echo(PROMPT, "Write a poem about the sea. Include the keyword 'salt' and do not use commas.")  # ROUGE-L


def test_answers_are_not_echoes():
    assert not is_echo(PROMPT, "Salt on the wind and waves on the shore\nthe sea sings softly forevermore")
    assert not is_echo(PROMPT, "Write")  # a prefix of the prompt is not the prompt
    assert not is_echo(PROMPT, "") and not is_echo("", "anything")


def test_echoes_fail_their_verdicts():
    flags = echo_flags([PROMPT, PROMPT, PROMPT], [PROMPT, "Salt and foam.", PROMPT])
    assert flags == [True, False, True]
    assert without_echoes([True, True, False], flags) == [False, True, False]
