import gc

from pipeline.common import cli


def test_a_finished_stage_leaves_its_objects_out_of_the_exit_collections():
    try:
        cli.run(lambda argv: None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
