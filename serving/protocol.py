"""The wire vocabulary of a service's HTTP API, named once, as MLflow's scoring server does.

This project's body is `{"records": [...]}` (/predict, JSON /batch), answered with
`{"model_version": ..., "predictions": [...]}`; /invocations speaks MLflow's scoring protocol.
The fields of each prediction are the inference-log columns (services.inference_log), so a
served row and its logged row carry the same names. No imports: clients use it freely.
"""

from __future__ import annotations

#: Request body of /predict and JSON /batch: `{"records": [{feature: value, ...}, ...]}`.
RECORDS = "records"
#: Answer of /predict, /batch and /invocations: one entry per record (MLflow's key too).
PREDICTIONS = "predictions"

#: MLflow scoring protocol: a list of records.
DF_RECORDS = "dataframe_records"
#: MLflow scoring protocol: pandas' split orient, `{"columns": [...], "data": [[...], ...]}`.
DF_SPLIT = "dataframe_split"
#: `dataframe_split`: the column names.
SPLIT_COLUMNS = "columns"
#: `dataframe_split`: the rows, each a list in the order of the columns.
SPLIT_DATA = "data"
#: MLflow scoring protocol (TF Serving's form): a list of records or a mapping of columns.
INPUTS = "inputs"
#: MLflow scoring protocol (TF Serving's form): the same as `inputs`.
INSTANCES = "instances"
#: The keys /invocations accepts, exactly one per body.
SUPPORTED_FORMATS = (DF_SPLIT, DF_RECORDS, INPUTS, INSTANCES)


def quoted(keys: tuple[str, ...], last: str = "or") -> str:
    """`'a', 'b' or 'c'`: keys named in an error message."""
    names = [f"'{key}'" for key in keys]
    return ", ".join(names[:-1]) + f" {last} {names[-1]}" if len(names) > 1 else names[0]
