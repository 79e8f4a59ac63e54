"""The `landmark` command reads like a kept tool: every subcommand's --help opens with what it does, every argument
says what it is, and --version answers."""

import argparse
import subprocess
import sys
from importlib.metadata import version

from landmark.cli import build_parser


def subcommands(parser) -> dict:
    (choices,) = [action.choices for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return choices


def test_every_subcommand_opens_its_help_with_what_it_does_and_explains_every_argument():
    commands = subcommands(build_parser())
    assert set(commands) == {"predict", "score", "validate-submission", "profile", "seeds", "check"}
    for name, command in commands.items():
        assert command.description and command.description[0].isupper(), name
        listed = [action.help for action in build_parser()._subparsers._group_actions[0]._choices_actions]
        assert command.description.lower().startswith(listed[list(commands).index(name)].lower()), name
        for action in command._actions:
            assert action.help, f"landmark {name} {'/'.join(action.option_strings) or action.dest} has no help"


def test_version_is_the_installed_package_s():
    result = subprocess.run([sys.executable, "-m", "landmark.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == f"landmark {version('landmark')}\n"


def test_a_wrong_command_still_exits_2_with_argparse_s_usage_line():
    result = subprocess.run([sys.executable, "-m", "landmark.cli", "scour"], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice: 'scour'" in result.stderr
