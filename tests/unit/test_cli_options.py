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


def test_media_options_are_the_volume_and_video_option_fields():
    """Every VolumeOptions / VideoOptions field is a flag of generate / estimate / chat with the dataclass's
    default and help; the flags make exactly the item the dataclass makes; bad combinations are the dataclass's
    own MediaError, raised before any weights are read."""
    import pytest

    from hulumed.commands import _turn, _volume_options
    from hulumed.errors import MediaError
    from hulumed.processing.video.options import VideoOptions
    from hulumed.processing.volume.options import VolumeOptions

    for verb in ("generate", "estimate", "chat"):
        parser = build_parser([verb])
        sub = parser._subparsers._group_actions[0].choices[verb]
        dests = {action.dest: action for action in sub._actions}
        for cls in (VolumeOptions, VideoOptions):
            for field in dataclasses.fields(cls):
                assert field.name in dests, (verb, field.name)
                assert dests[field.name].default == field.default, (verb, field.name)
                assert field.metadata["help"] in dests[field.name].help, (verb, field.name)
    argv = ["generate", "--model", "m", "--volume", "ct.nii.gz", "--slices", "8", "--axis", "1", "--window-center",
            "40", "--window-width", "400", "--orientation", "RAS", "--slice-spacing", "2.5", "--fps", "2", "hi"]
    args = build_parser(["generate"]).parse_args(argv)
    [volume_part] = [p for p in _turn(args, "hi")["content"] if p["type"] == "3d"]
    assert volume_part["3d"] == VolumeOptions(num_slices=8, axis=1, window_center=40.0, window_width=400.0,
                                              orientation="ras", slice_spacing=2.5).item("ct.nii.gz")
    args = build_parser(["generate"]).parse_args(["generate", "--model", "m", "--window=-600,1500", "hi"])
    assert _volume_options(args).window == (-600.0, 1500.0)
    args = build_parser(["generate"]).parse_args(["generate", "--model", "m", "--window", "lung", "--window-center",
                                                  "40", "hi"])
    with pytest.raises(MediaError, match="not both"):
        _volume_options(args)


def test_every_option_of_every_verb_has_help():
    """Help lives on the fields (``hulumed.options.option``) or beside a hand-written flag; none is empty."""
    import argparse

    parser = build_parser(None)
    [verbs] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [(verb, action.option_strings[0]) for verb, sub in verbs.choices.items() for action in sub._actions
               if action.option_strings and action.dest != "help" and not action.help]
    assert missing == []
    assert len(verbs.choices) >= 10


def test_user_turn_takes_option_objects_item_dicts_and_shorthands():
    import pytest

    from hulumed.conversation import user_turn
    from hulumed.errors import MediaError
    from hulumed.processing.video.options import VideoOptions
    from hulumed.processing.volume.options import VolumeOptions

    [video, volume, _] = user_turn("x", video="v.mp4", volume="ct.nii.gz", video_options=VideoOptions(fps=2),
                                   volume_options={"window": "lung", "nii_axis": 1}, max_frames=8, slices=4)["content"]
    assert video["video"] == {"video_path": "v.mp4", "fps": 2, "max_frames": 8}
    assert volume["3d"] == VolumeOptions(num_slices=4, axis=1, window="lung").item("ct.nii.gz")
    assert user_turn("x", volume="ct.nii.gz")["content"][0]["3d"] == {"image_path": "ct.nii.gz", "nii_axis": 2}
    with pytest.raises(MediaError, match="nii_axis"):
        user_turn("x", volume="ct.nii.gz", axis=5)
