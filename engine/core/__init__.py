"""What every model family shares, written once: the job, placement and the memory ladder, decode
with the NaN guard, previews, the step callback (progress and cancel), prompt policy and add-ons."""
