"""Quality gates between staging and the shards (issue: quality gates and SFT
exports). Each gate is a datatrove-style step: a frozen dataclass config that
takes trajectories and returns them with its verdict added."""
