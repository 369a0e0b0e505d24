# nbgrader configuration for attnedu: instructors run `make release` and `make grade`
# (see book/for-instructors.md); the nbgrader commands also work from this folder.
import os

c = get_config()  # noqa: F821 (provided by nbgrader)
here = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "attnedu"
c.CourseDirectory.source_directory = "notebooks"  # notebooks/<NN-slug>/<NN-slug>.ipynb
# Everything nbgrader writes goes under _grading/, which git ignores.
c.CourseDirectory.release_directory = "_grading/release"
c.CourseDirectory.submitted_directory = "_grading/submitted"
c.CourseDirectory.autograded_directory = "_grading/autograded"
c.CourseDirectory.feedback_directory = "_grading/feedback"
os.makedirs(os.path.join(here, "_grading"), exist_ok=True)  # sqlite cannot create the folder
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(here, "_grading", "gradebook.db")

# A cell that runs longer than this is interrupted and counts as failed; the rest of
# the notebook is still graded. Every chapter cell finishes in a few seconds.
c.Execute.timeout = 60
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
