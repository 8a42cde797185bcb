"""The shared argument types refuse bad text with a message naming it."""

import argparse

import pytest

from pose6d_ros.tools import cli_args


@pytest.mark.parametrize('parse, text, expected', [
    (cli_args.positive_int, '3', 3), (cli_args.non_negative_int, '0', 0),
    (cli_args.positive_float, '2.5', 2.5), (cli_args.size, '640X480', (640, 480)),
    (cli_args.id_list, '1, 5,9', [1, 5, 9]),
])
def test_good_text_parses(parse, text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize('parse, text', [
    (cli_args.positive_int, '0'), (cli_args.positive_int, 'two'),
    (cli_args.non_negative_int, '-1'), (cli_args.positive_float, 'nan'),
    (cli_args.positive_float, 'inf'), (cli_args.positive_float, '-1'), (cli_args.size, '640'),
    (cli_args.size, '0x480'), (cli_args.id_list, ''), (cli_args.id_list, '1,a'),
])
def test_bad_text_is_refused_with_the_text_in_the_message(parse, text):
    with pytest.raises(argparse.ArgumentTypeError, match='expected'):
        parse(text)
