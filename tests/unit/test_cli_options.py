"""Options generated from dataclasses: defaults on the command line equal the dataclass defaults, units included."""

from __future__ import annotations

import dataclasses

from hulumed.cli import build_parser
from hulumed.serve.settings import ServerSettings


def test_serve_defaults_equal_server_settings_defaults_in_bytes():
    args = build_parser(["serve"]).parse_args(["serve", "--model", "m"])
    for field in dataclasses.fields(ServerSettings):
        if field.name in ("model_name", "api_key", "media_root"):
            continue  # filled from --model / the environment / None
        assert getattr(args, field.name) == field.default, field.name
    assert isinstance(args.max_body_bytes, int) and args.max_body_bytes == 256 * 2**20


def test_megabyte_flags_scale_to_bytes():
    args = build_parser(["serve"]).parse_args(["serve", "--model", "m", "--max-body-mb", "2", "--max-media-mb", "0.5"])
    assert (args.max_body_bytes, args.max_media_bytes) == (2 * 2**20, 2**19)


def test_served_model_name_of_a_local_folder_is_never_its_absolute_path(tmp_path):
    from hulumed.serve.commands import served_model_name

    snapshot = tmp_path / "hub" / "models--ZJU-AI4H--Hulu-Med-7B" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    assert served_model_name(str(snapshot)) == "ZJU-AI4H/Hulu-Med-7B"  # the README's requests name this
    own = tmp_path / "Hulu-Med-4B"
    own.mkdir()
    assert served_model_name(str(own)) == "Hulu-Med-4B"
    assert served_model_name("ZJU-AI4H/Hulu-Med-14B") == "ZJU-AI4H/Hulu-Med-14B"  # a hub id as given
