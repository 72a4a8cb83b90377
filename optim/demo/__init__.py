"""Web demo: see the lab's models and report variants detect, in Gradio (`python -m optim.demo.gradio_app`) or
Streamlit (`streamlit run optim/demo/streamlit_app.py`); both are thin layouts over `optim.demo.core`."""
