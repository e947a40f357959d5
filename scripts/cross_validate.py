"""k-fold cross-validation: ``python scripts/cross_validate.py data.num_folds=5 [overrides]``
(same as ``calcinet-cv``)."""

from calcinet.cli.cv import main

if __name__ == "__main__":
    main()
