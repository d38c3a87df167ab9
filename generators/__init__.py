"""Generator plugins shipped with madlab, registered through the ``madlab.generators`` entry points."""
