"""The pages' back-ends: pure computations on features and run directories, one module per page
(data in, arrays and tables out; no plotly, no Streamlit). ``projection`` is shared by all."""
