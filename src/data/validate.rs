//! Checks that a loaded train and test set can be used together: a run on
//! sets that fail them would panic in the middle of training, or report an
//! accuracy that means nothing (0% on no test images, 100% with one class).

use std::path::Path;

use super::{DataError, ImageSet};

/// Both sets hold images, share one image shape and one class list, and
/// have at least 2 classes. `dir` names the data folder in messages.
pub fn check_pair(train: &ImageSet, test: &ImageSet, dir: &Path) -> Result<(), DataError> {
    let d = dir.display();
    for set in [train, test] {
        if set.is_empty() {
            return Err(DataError::Invalid(format!(
                "the {} set has no images (in {d}); a run needs images to train on and to measure accuracy: replace its files with ones that hold images",
                set.name
            )));
        }
    }
    if train.shape != test.shape {
        let [a, b] = [train.shape, test.shape].map(|[c, h, w]| format!("{c}x{h}x{w}"));
        return Err(DataError::Invalid(format!(
            "train images are {a} but test images are {b} (in {d}); the files do not belong together: replace one of them"
        )));
    }
    if train.classes != test.classes {
        return Err(DataError::Invalid(format!(
            "the train set has classes {:?} but the test set {:?} (in {d}); use train and test files of one dataset",
            train.classes, test.classes
        )));
    }
    if train.num_classes() < 2 {
        return Err(DataError::Invalid(format!(
            "{} has {} class; a classifier needs at least 2 classes",
            train.name,
            train.num_classes()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::synthetic;

    fn check(train: &ImageSet, test: &ImageSet) -> Result<(), String> {
        check_pair(train, test, Path::new("/d")).map_err(|e| e.to_string())
    }

    #[test]
    fn pairs_that_cannot_work_are_refused() {
        let train = synthetic(20, [1, 8, 8], 3, 1, "train");
        let test = synthetic(10, [1, 8, 8], 3, 1, "test");
        assert!(check(&train, &test).is_ok());
        let err = check(&train, &test.clone().take(0)).unwrap_err();
        assert!(err.contains("synthetic/test set has no images"), "{err}");
        let small = synthetic(10, [1, 4, 4], 3, 1, "test");
        let err = check(&train, &small).unwrap_err();
        assert!(err.contains("1x8x8") && err.contains("1x4x4"), "{err}");
        let other = synthetic(10, [1, 8, 8], 4, 1, "test");
        assert!(check(&train, &other).unwrap_err().contains("classes"));
        let one = synthetic(10, [1, 8, 8], 1, 1, "train");
        let err = check(&one, &synthetic(10, [1, 8, 8], 1, 1, "test")).unwrap_err();
        assert!(err.contains("at least 2 classes"), "{err}");
    }
}
