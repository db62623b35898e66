from diabetes_regression.schema import CONTRACT


def test_contract_lists_the_ten_features_then_the_target():
    assert CONTRACT.feature_names == [
        "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"
    ]
    assert CONTRACT.columns == [*CONTRACT.feature_names, "target"]


def test_every_column_has_a_sane_range_and_mean_band():
    for column in (*CONTRACT.features, CONTRACT.target):
        assert column.minimum < column.maximum, column.name
        low, high = column.mean_range
        assert column.minimum <= low < high <= column.maximum, column.name


def test_reference_data_sits_inside_the_contract(diabetes):
    for column in (*CONTRACT.features, CONTRACT.target):
        values = diabetes[column.name]
        assert values.between(column.minimum, column.maximum).all(), column.name
        low, high = column.mean_range
        assert low <= values.mean() <= high, column.name


def test_feature_lookup_finds_features_and_target_and_rejects_unknown_names():
    assert CONTRACT.feature("bmi").name == "bmi"
    assert CONTRACT.feature("target").name == "target"
    try:
        CONTRACT.feature("height")
    except KeyError:
        pass
    else:
        raise AssertionError("unknown column was accepted")
