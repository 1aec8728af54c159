"""Dataset studies: train several dataset variants the same way and compare them (`compare`), the judge's pairwise
preferences and the paired differences from the baseline (`pairwise`), the markdown report and plot of a comparison
(`report`), and the YAML recipes that build the data and run a study (`recipe`)."""
